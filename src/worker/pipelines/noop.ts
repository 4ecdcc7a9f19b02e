/** `noop` (free pipeline): completes at once and writes nothing; for smoke tests and benchmarks. */
import type { PipelineExecutor } from "./types";

export const noop: PipelineExecutor = {
  readsObject: false,
  template: "noop",
  async run() {
    return {
      status: "completed",
      output: { kind: "none" },
      chunksCreated: 0,
      embeddingsCreated: 0,
      vectorStatus: "",
      error: "",
      errorDetails: "",
    };
  },
};
