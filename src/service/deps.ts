import type { ObjectStore } from "../storage/object-store";
import type { Repository } from "../storage/repository";

/** What the service implementations depend on. */
export interface ServiceDeps {
  repo: Repository;
  objects: ObjectStore;
  /** Current time in Unix epoch milliseconds. */
  now: () => number;
}
