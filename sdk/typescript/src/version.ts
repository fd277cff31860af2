export const VERSION = "0.1.0-beta.1";
