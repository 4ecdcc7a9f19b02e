/**
 * Collections whose vectors the caller pushes (AddVectorCollection, embedding_source
 * EXTERNAL; storage in storage/postgres/collection-store.ts): the checks of their fields
 * and of pushed vectors, and their shape for search, which treats each as a pipeline of
 * the template EXTERNAL (its id, name, dimension and embed model in the same places). Also
 * the catalog of embedding templates ListTemplates answers with.
 */
import type { Template, VectorRecord } from "../../gen/dodil/k3/vector/v1/vector_pb";
import { InvalidArgument, Unimplemented } from "../domain/errors";
import type { Scope } from "../domain/job";
import type { Pipeline } from "../domain/pipeline";
import { checkLength, checkRequired, MAX_TEXT, quote } from "../domain/validate";
import type { ManualCollection, PushedVector } from "../storage/postgres/collection-store";
import { TEXT_EXTENSIONS } from "../worker/extract";

/** The template a collection of pushed vectors carries where search expects a pipeline's. */
export const EXTERNAL = "external";
/** The built-in embedder's model. */
export const LOCAL_MODEL = "local-hash";
/** Vectors (or ids) in one write. */
const MAX_BATCH = 1000;
const MAX_ID_BYTES = 1024;
const MAX_CONTENT = 64 * 1024;
const MAX_DIMENSIONS = 8192;

/** A collection of pushed vectors as search sees collections. */
export function asPipeline(scope: Scope, c: ManualCollection): Pipeline {
  return {
    pipelineId: c.collectionId,
    org: scope.org,
    bucket: scope.bucket,
    name: c.name,
    description: c.description,
    template: EXTERNAL,
    options: { dimensions: String(c.dimensions), ...(c.embedModel ? { embedding_model: c.embedModel } : {}) },
    storeEntityId: "",
    storeEntityKind: "vector",
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
  };
}

/** An enum-like string field: accepted spellings (case-insensitive, with or without the enum's prefix) or the refusal. */
function oneOf(value: string, field: string, prefix: string, served: string[], known: string[]): void {
  const v = value.toUpperCase().replace(new RegExp(`^${prefix}`), "");
  if (v === "" || served.includes(v)) return;
  if (known.includes(v)) throw new Unimplemented(`${field} ${quote(value)} is not served here; accepted: ${served.join(", ")} (or empty)`);
  throw new InvalidArgument(`${field} ${quote(value)} is not one of ${[...served, ...known].join(", ")}`, field);
}

/** The fields of an AddVectorCollection, checked. `remoteModels`: a remote embedder is configured (any model name goes to it). */
export function checkCollectionFields(
  req: { name: string; description: string; dimensions: number; distanceMetric: string; embedModel: string; embeddingType: string; sparseMode: string },
  remoteModels: boolean,
): { name: string; description: string; dimensions: number; embedModel: string } {
  checkRequired(req.name, "name");
  if (req.name.length > 200) throw new InvalidArgument(`name is longer than 200 characters`, "name");
  checkLength(req.description, MAX_TEXT, "description");
  if (!Number.isInteger(req.dimensions) || req.dimensions < 1 || req.dimensions > MAX_DIMENSIONS) {
    throw new InvalidArgument(`dimensions ${req.dimensions} must be from 1 to ${MAX_DIMENSIONS} (every vector of the collection has that many values)`, "dimensions");
  }
  oneOf(req.distanceMetric, "distance_metric", "DISTANCE_METRIC_", ["COSINE"], ["L2", "IP", "HAMMING", "JACCARD"]);
  oneOf(req.embeddingType, "embedding_type", "EMBEDDING_TYPE_", ["FLOAT"], ["BINARY", "FLOAT16", "BFLOAT16", "INT8"]);
  oneOf(req.sparseMode, "sparse_mode", "SPARSE_MODE_", ["BM25", "NONE"], ["EXTERNAL"]);
  checkLength(req.embedModel, 200, "embed_model");
  if (req.embedModel !== "" && req.embedModel !== LOCAL_MODEL && !remoteModels) {
    throw new InvalidArgument(
      `embed_model ${quote(req.embedModel)}: this server embeds text queries with its built-in ${quote(LOCAL_MODEL)} model only (K3_EMBEDDINGS_URL names a remote embedder for other models); give ${quote(LOCAL_MODEL)}, or nothing for vector queries only`,
      "embed_model",
    );
  }
  return { name: req.name, description: req.description, dimensions: req.dimensions, embedModel: req.embedModel };
}

/** Ids of one write: 1 to MAX_BATCH, each 1 to MAX_ID_BYTES bytes, distinct. */
export function checkIds(ids: string[], field: (i: number) => string, batchField: string): void {
  if (ids.length === 0 || ids.length > MAX_BATCH) throw new InvalidArgument(`${batchField}: ${ids.length} given; one write takes 1 to ${MAX_BATCH}`, batchField);
  const seen = new Map<string, number>();
  ids.forEach((id, i) => {
    if (id === "" || Buffer.byteLength(id) > MAX_ID_BYTES || id.includes("\u0000")) {
      throw new InvalidArgument(`${field(i)} ${quote(id)} must be 1 to ${MAX_ID_BYTES} bytes without NUL`, field(i));
    }
    const first = seen.get(id);
    if (first !== undefined) throw new InvalidArgument(`${field(i)} ${quote(id)} is ${field(first)} again; ids of one write are distinct`, field(i));
    seen.set(id, i);
  });
}

/** Pushed vectors checked against the collection's dimension. */
export function checkVectors(records: VectorRecord[], dimensions: number, collection: string): PushedVector[] {
  checkIds(records.map((r) => r.id), (i) => `vectors[${i}].id`, "vectors");
  return records.map((r, i) => {
    if (r.values.length !== dimensions) {
      throw new InvalidArgument(`vectors[${i}].values has ${r.values.length} values; collection ${quote(collection)} has ${dimensions} dimensions`, `vectors[${i}].values`);
    }
    const bad = r.values.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new InvalidArgument(`vectors[${i}].values[${bad}] is ${r.values[bad]}; only finite numbers are accepted`, `vectors[${i}].values`);
    checkLength(r.content, MAX_CONTENT, `vectors[${i}].content`);
    return { id: r.id, values: r.values, content: r.content, metadata: { ...r.metadata } };
  });
}

/** The embedding templates K3 names (its catalog's index templates); this server runs the first. */
export const TEMPLATE_CATALOG: Array<Omit<Template, "$typeName">> = [
  { id: "text_embedding_index", category: "embedding", modalities: ["text", "pdf", "html"], acceptedExtensions: [...TEXT_EXTENSIONS], description: "Extracts text, chunks it and embeds each chunk (the canonical RAG ingest); no required inputs.", served: true },
  { id: "code_embedding_index", category: "embedding", modalities: ["code"], acceptedExtensions: [".rs", ".py", ".js", ".ts", ".go", ".java", ".c", ".cpp"], description: "Code chunked along its syntax tree, then embedded.", served: false },
  { id: "visual_embedding_index", category: "embedding", modalities: ["image", "video", "audio", "pdf"], acceptedExtensions: [".png", ".jpg", ".jpeg", ".webp", ".mp4", ".mp3", ".pdf"], description: "Multimodal embeddings of images, video, audio and PDF pages.", served: false },
  { id: "face_embedding_index", category: "embedding", modalities: ["image"], acceptedExtensions: [".png", ".jpg", ".jpeg", ".webp"], description: "Detects faces, then embeds each crop.", served: false },
  { id: "object_embedding_index", category: "embedding", modalities: ["image"], acceptedExtensions: [".png", ".jpg", ".jpeg", ".webp"], description: "Detects the objects named by the labels input, then embeds each crop; requires labels.", served: false },
];
