import { type ClientOptions, Core } from "./core.js";
import { Chat } from "./resources/chat.js";
import { Credits } from "./resources/credits.js";
import { Files } from "./resources/files.js";
import { Generations } from "./resources/generations.js";
import { Keys } from "./resources/keys.js";
import { Models } from "./resources/models.js";
import { WebhookEvents, Webhooks } from "./resources/webhooks.js";

/**
 * The Rivya API client.
 *
 *   const rivya = new Rivya();                       // RIVYA_API_KEY, RIVYA_BASE_URL
 *   const task = await rivya.generations.create({ model: "rivya-image-1", input: { prompt: "a lighthouse" } });
 *   const done = await rivya.generations.wait(task.id);
 */
export class Rivya extends Core {
  readonly models: Models;
  readonly files: Files;
  readonly generations: Generations;
  readonly chat: Chat;
  readonly credits: Credits;
  readonly webhooks: Webhooks;
  readonly webhookEvents: WebhookEvents;
  readonly keys: Keys;

  constructor(options: ClientOptions = {}) {
    super(options);
    this.models = new Models(this);
    this.files = new Files(this);
    this.generations = new Generations(this);
    this.chat = new Chat(this);
    this.credits = new Credits(this);
    this.webhooks = new Webhooks(this);
    this.webhookEvents = new WebhookEvents(this);
    this.keys = new Keys(this);
  }
}
