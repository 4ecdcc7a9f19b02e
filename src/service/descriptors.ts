/** The services this server implements, as generated descriptors, in the order they are documented. */
import { IngestService } from "../../gen/dodil/k3/ingest/v1/ingest_pb";
import { PipelineService } from "../../gen/dodil/k3/pipeline/v1/pipeline_pb";
import { SourceService } from "../../gen/dodil/k3/source/v1/source_pb";
import { StorageService } from "../../gen/dodil/k3/storage/v1/storage_pb";
import { VectorService } from "../../gen/dodil/k3/vector/v1/vector_pb";

export const SERVICES = [IngestService, PipelineService, StorageService, SourceService, VectorService] as const;
