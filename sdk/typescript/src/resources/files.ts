import type { Core, RequestOptions } from "../core.js";
import { PagePromise } from "../pagination.js";
import type { FileListParams, FileObject, FileUploadParams } from "../types.js";

/** Reference media and chat attachments: `POST /files` (multipart), `GET /files[/{id}]`, `DELETE /files/{id}`. */
export class Files {
  constructor(private readonly client: Core) {}

  upload({ file, purpose, filename }: FileUploadParams, options?: RequestOptions): Promise<FileObject> {
    const blob = file instanceof Blob ? file : new Blob([file instanceof ArrayBuffer ? file : asBytes(file)]);
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", blob, filename ?? (file as File).name ?? "upload");
    return this.client.post<FileObject>("/files", form, options);
  }

  retrieve(fileId: string, options?: RequestOptions): Promise<FileObject> {
    return this.client.get<FileObject>(`/files/${encodeURIComponent(fileId)}`, undefined, options);
  }

  list(query?: FileListParams, options?: RequestOptions): PagePromise<FileObject> {
    return new PagePromise<FileObject>(this.client, "/files", { ...query }, options);
  }

  delete(fileId: string, options?: RequestOptions): Promise<FileObject> {
    return this.client.delete<FileObject>(`/files/${encodeURIComponent(fileId)}`, options);
  }
}

function asBytes(view: ArrayBufferView): Uint8Array<ArrayBuffer> {
  // Copied, so that a view of a SharedArrayBuffer or a larger buffer uploads exactly its bytes.
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
}
