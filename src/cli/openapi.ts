/** Prints the OpenAPI document of the REST door (the build writes it to dist/openapi.json). */
import { IngestService } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { buildOpenApi } from "../transport/openapi";
import { VERSION } from "../version";

process.stdout.write(JSON.stringify(buildOpenApi([IngestService, PipelineService], VERSION), null, 2) + "\n");
