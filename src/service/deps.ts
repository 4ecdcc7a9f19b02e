import type { ObjectStore } from "../storage/object-store";
import type { Repository } from "../storage/repository";
import type { SecretBox } from "../storage/secrets";

/** What the service implementations depend on. */
export interface ServiceDeps {
  repo: Repository;
  objects: ObjectStore;
  /** Current time in Unix epoch milliseconds. */
  now: () => number;
  /** Signs presigned object URLs (GetObjectUrl). */
  secrets?: SecretBox;
  /** The base URL clients reach the HTTP port at (K3_PUBLIC_URL), for the URLs we hand out. */
  publicUrl?: () => string;
  /** Tells this process's discovery runner (if any) that a discovery was created. */
  discoveryCreated?: () => void;
}
