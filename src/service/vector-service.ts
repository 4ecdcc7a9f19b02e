/**
 * VectorService: a bucket's engine (the built-in PostgreSQL store), its collections (one
 * per vector pipeline, and those whose vectors callers push: vector-collections.ts) and
 * search over their chunks, written once as a Connect ServiceImpl and served by every door.
 * Dense scoring is exact, in memory (search/vector-index.ts); hybrid search fuses it with
 * PostgreSQL's full-text ranking by reciprocal rank (k = 60).
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  CollectionSchema,
  EngineStatus,
  SearchMode,
  VectorService,
  type Collection,
  type CollectionStatus,
  type SearchResult,
  type VectorRecord,
} from "../../gen/dodil/k3/vector/v1/vector_pb";
import { AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable, Unimplemented } from "../domain/errors";
import { newId } from "../domain/ids";
import type { Scope } from "../domain/job";
import type { Pipeline } from "../domain/pipeline";
import { checkBucket, checkLength, checkRequired, quote } from "../domain/validate";
import type { Hit } from "../search/vector-index";
import { chunkRefKey, type ChunkPlaceRow, type ChunkRef } from "../storage/postgres/vector-store";
import { createBuckets } from "./buckets";
import { scopeOf } from "./caller";
import type { ServiceDeps } from "./deps";
import { insertPipeline } from "./pipeline-service";
import { asPipeline, checkCollectionFields, checkIds, checkVectors, EXTERNAL, TEMPLATE_CATALOG } from "./vector-collections";

const DEFAULT_DIMENSION = 384;
const MAX_TOP_K = 1000;
const MAX_QUERY_CHARS = 16_384;
const RRF_K = 60;
const TEMPLATES = ["text_embedding_index"];
const KNOWN_ELSEWHERE = ["code_embedding_index", "visual_embedding_index", "face_embedding_index", "object_embedding_index"];

const refKey = (h: ChunkRef) => chunkRefKey(h.pipelineId, h.key, h.chunkIndex);

/** Word tokens of a query for full-text ranking (letters and digits only, so they are safe in a tsquery). */
function terms(text: string): string[] {
  return [...new Set(text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [])].slice(0, 32);
}

/** Builds the VectorService implementation over the given dependencies. */
export function createVectorService(deps: ServiceDeps): ServiceImpl<typeof VectorService> {
  const { repo, now } = deps;
  const store = repo.vector;
  const buckets = createBuckets(deps);
  if (!deps.vectorIndex || !deps.embedderFor) throw new Error("the vector service needs a vector index and an embedder");
  const index = deps.vectorIndex;
  const embedderFor = deps.embedderFor;

  const dimensionOf = (p: Pipeline) => Number.parseInt(p.options.dimensions ?? "", 10) || DEFAULT_DIMENSION;
  /** The model text queries of a collection are embedded with; empty for pushed vectors without one (vector queries only). */
  const modelOf = (p: Pipeline) => (p.template === EXTERNAL ? (p.options.embedding_model ?? "") : p.options.embedding_model || deps.embeddingModel || "local-hash");

  /** The bucket's collections as pipelines: its vector pipelines', then those of pushed vectors (template EXTERNAL). */
  async function vectorPipelines(scope: Scope): Promise<Pipeline[]> {
    const [page, manual] = await Promise.all([
      repo.config.pipelineList({ org: scope.org, bucket: scope.bucket, storeEntityKind: "vector" }, { limit: 1000, signal: scope.signal }),
      repo.collections.collectionList(scope),
    ]);
    return [...page.items.filter((p) => TEMPLATES.includes(p.template)).sort((a, b) => a.createdAt - b.createdAt), ...manual.map((c) => asPipeline(scope, c))];
  }

  async function collectionsOf(scope: Scope, pipelines: Pipeline[]): Promise<Collection[]> {
    const counts = await store.counts(scope, pipelines.map((p) => p.pipelineId));
    // The dimension its chunks have (a remote model decides it), else what its options ask for.
    const dims = new Map<string, number>();
    for (const p of pipelines) dims.set(p.pipelineId, (await index.dimensionOf(scope, p.pipelineId)) || dimensionOf(p));
    return pipelines.map((p) => {
      const pushed = p.template === EXTERNAL;
      return create(CollectionSchema, {
        collectionId: p.pipelineId,
        bucket: p.bucket,
        name: p.name,
        description: p.description,
        embedPipelineId: pushed ? "" : p.pipelineId,
        embedPipelineName: pushed ? "" : p.template,
        templateId: pushed ? "" : p.template,
        dimensions: pushed ? dimensionOf(p) : dims.get(p.pipelineId),
        distanceMetric: "cosine",
        embedModel: modelOf(p),
        embeddingSource: pushed ? "EXTERNAL" : "PIPELINE",
        chunkCount: BigInt(counts.get(p.pipelineId)?.chunks ?? 0),
        objectCount: BigInt(counts.get(p.pipelineId)?.objects ?? 0),
        createdAt: BigInt(p.createdAt),
        updatedAt: BigInt(p.updatedAt),
      });
    });
  }

  /** The collection `idOrName` among `among` (default: the bucket's). */
  async function collectionOf(scope: Scope, idOrName: string, field: string, among?: Pipeline[]): Promise<Pipeline> {
    checkRequired(idOrName, field);
    const p = (among ?? (await vectorPipelines(scope))).find((x) => x.pipelineId === idOrName || x.name === idOrName);
    if (!p) throw new NotFound(`${field} ${quote(idOrName)}: no collection of bucket ${quote(scope.bucket)} has that id or name`);
    return p;
  }

  async function engineOf(scope: Scope, created: boolean) {
    const e = await store.engineGet(scope);
    if (!e) throw new NotFound(`bucket ${quote(scope.bucket)} has no vector engine; configure one with POST /${scope.bucket}/vector`);
    const names = (await vectorPipelines(scope)).map((p) => p.name);
    return {
      engine: { engineId: e.engineId, bucket: scope.bucket, mode: e.mode, status: EngineStatus.ACTIVE, dimension: DEFAULT_DIMENSION, metric: "cosine", store: "postgresql", collections: names, createdAt: BigInt(e.createdAt), updatedAt: BigInt(e.updatedAt) },
      created,
    };
  }

  /** The query vector for each collection: the given vector, or the text embedded with the collection's own embedder. */
  async function queryVectors(pipelines: Pipeline[], text: string | undefined, vector: number[] | undefined, signal: AbortSignal): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    if (vector) {
      const q = Float32Array.from(vector);
      for (const p of pipelines) out.set(p.pipelineId, q);
      return out;
    }
    const byEmbedder = new Map<string, Pipeline[]>();
    for (const p of pipelines.filter((x) => modelOf(x) !== "")) {
      const sig = `${dimensionOf(p)}\u0000${modelOf(p)}`;
      byEmbedder.set(sig, [...(byEmbedder.get(sig) ?? []), p]);
    }
    for (const group of byEmbedder.values()) {
      let v: number[];
      try {
        [v] = await embedderFor(group[0].options).embed([text ?? ""], signal);
      } catch {
        // The embedder's own error may name its URL; the caller gets the collection, not the address.
        throw new Unavailable(`the embedder of collection ${quote(group[0].name)} could not embed the query; retry later`);
      }
      for (const p of group) out.set(p.pipelineId, Float32Array.from(v));
    }
    return out;
  }

  /** The collection of pushed vectors a vectors call names (by id or name); FAILED_PRECONDITION for a pipeline's. */
  async function pushedCollection(req: { bucket: string; collectionId: string }, ctx: HandlerContext): Promise<{ scope: Scope; p: Pipeline }> {
    checkBucket(req.bucket);
    const scope = scopeOf(ctx, req.bucket);
    const p = await collectionOf(scope, req.collectionId, "collection_id");
    if (p.template !== EXTERNAL) {
      throw new FailedPrecondition(`collection ${quote(p.name)} is filled by its pipeline from the bucket's objects; vectors are pushed only into a collection made with AddVectorCollection`);
    }
    return { scope, p };
  }

  async function writeVectors(req: { bucket: string; collectionId: string; vectors: VectorRecord[] }, ctx: HandlerContext, mode: "insert" | "upsert"): Promise<number> {
    const { scope, p } = await pushedCollection(req, ctx);
    const vectors = checkVectors(req.vectors, dimensionOf(p), p.name);
    return repo.collections.vectorsWrite(scope, p.pipelineId, vectors, mode, newId("vw", now()), now());
  }

  return {
    async getEngine(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      await buckets.get(scope);
      return { engine: (await engineOf(scope, false)).engine };
    },

    async configureEngine(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const mode = req.mode.toLowerCase().replace(/^engine_mode_/, "");
      if (mode === "external" || mode === "pick") {
        throw new Unimplemented(`mode ${quote(req.mode)} is not served: this server's engine is its own PostgreSQL store; use "auto"`);
      }
      if (mode !== "" && mode !== "auto") throw new InvalidArgument(`mode ${quote(req.mode)} is not a mode; accepted: auto (or ENGINE_MODE_AUTO)`, "mode");
      await buckets.get(scope);
      const { created } = await store.engineEnsure(scope, newId("eng", now()), now());
      const { engine } = await engineOf(scope, created);
      return { engine, created, message: created ? "engine configured" : "the engine was configured already; nothing changed" };
    },

    async deleteEngine(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      await buckets.get(scope);
      const held = await vectorPipelines(scope);
      if (held.length > 0) {
        throw new FailedPrecondition(
          `the engine of bucket ${quote(req.bucket)} holds collections ${held.map((p) => quote(p.name)).join(", ")}; delete them first (a pushed one with DELETE /${req.bucket}/vector/collections/{id}, a pipeline's with DELETE /${req.bucket}/pipelines/{id})`,
        );
      }
      if (!(await store.engineDelete(scope))) throw new NotFound(`bucket ${quote(req.bucket)} has no vector engine`);
      return {};
    },

    async listVBaseInstances() {
      return { instances: [], message: "no VBase instances: this server's vector engine is its own PostgreSQL store (mode auto)" };
    },

    async addVectorPipeline(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      checkRequired(req.templateId, "template_id");
      if (KNOWN_ELSEWHERE.includes(req.templateId)) throw new Unimplemented(`template_id ${quote(req.templateId)} is not served here; accepted: ${TEMPLATES.join(", ")}`);
      if (!TEMPLATES.includes(req.templateId)) throw new InvalidArgument(`template_id ${quote(req.templateId)} is not an embedding template; accepted: ${TEMPLATES.join(", ")}`, "template_id");
      await buckets.get(scope);
      if ((await repo.collections.collectionList(scope)).some((c) => c.name === req.name)) {
        throw new AlreadyExists(`name ${quote(req.name)}: bucket ${quote(req.bucket)} has a collection of that name already`);
      }
      await store.engineEnsure(scope, newId("eng", now()), now());
      const pipeline = await insertPipeline(deps, scope, { name: req.name, description: req.description, template: req.templateId, options: req.templateInputs, storeEntityId: "" });
      const [collection] = await collectionsOf(scope, [pipeline]);
      return { collection, embedPipelineId: pipeline.pipelineId, embedPipelineName: pipeline.template };
    },

    async listCollections(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      await buckets.get(scope);
      return { collections: await collectionsOf(scope, await vectorPipelines(scope)) };
    },

    async getCollection(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const [collection] = await collectionsOf(scope, [await collectionOf(scope, req.collectionId, "collection_id")]);
      return { collection };
    },

    async deleteCollection(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const p = await collectionOf(scope, req.collectionId, "collection_id");
      if (p.template !== EXTERNAL) return { deletedChunks: BigInt(await store.deleteCollection(scope, p.pipelineId)) };
      const deleted = await repo.collections.collectionDelete(scope, p.pipelineId);
      if (deleted === undefined) throw new NotFound(`collection_id ${quote(req.collectionId)}: no collection of bucket ${quote(req.bucket)} has that id or name`);
      return { deletedChunks: BigInt(deleted) };
    },

    async addVectorCollection(req, ctx) {
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const f = checkCollectionFields(req, deps.embeddingModel !== undefined);
      await buckets.get(scope);
      if ((await vectorPipelines(scope)).some((p) => p.name === f.name)) {
        throw new AlreadyExists(`name ${quote(f.name)}: bucket ${quote(req.bucket)} has a collection of that name already`);
      }
      await store.engineEnsure(scope, newId("eng", now()), now());
      const c = await repo.collections.collectionInsert(scope, { collectionId: newId("col", now()), ...f, createdAt: now(), updatedAt: now() });
      const [collection] = await collectionsOf(scope, [asPipeline(scope, c)]);
      return { collection };
    },

    async insertVectors(req, ctx) {
      return { insertedCount: BigInt(await writeVectors(req, ctx, "insert")) };
    },

    async upsertVectors(req, ctx) {
      return { upsertedCount: BigInt(await writeVectors(req, ctx, "upsert")) };
    },

    async deleteVectors(req, ctx) {
      const { scope, p } = await pushedCollection(req, ctx);
      checkIds(req.ids, (i) => `ids[${i}]`, "ids");
      return { deletedCount: BigInt(await repo.collections.vectorsDelete(scope, p.pipelineId, req.ids, now())) };
    },

    async listTemplates(req, ctx) {
      checkBucket(req.bucket);
      checkLength(req.search, 200, "search");
      await buckets.get(scopeOf(ctx, req.bucket));
      const q = req.search.toLowerCase();
      const matches = (t: (typeof TEMPLATE_CATALOG)[number]) => q === "" || [t.id, t.description, ...t.modalities].some((x) => x.toLowerCase().includes(q));
      return { templates: TEMPLATE_CATALOG.filter(matches) };
    },

    async search(req, ctx) {
      const started = performance.now();
      checkBucket(req.bucket);
      const scope = scopeOf(ctx, req.bucket);
      const text = req.query.case === "text" ? req.query.value : undefined;
      const vector = req.query.case === "vector" ? (req.query.value.values ?? []) : undefined;
      if (text === undefined && vector === undefined) throw new InvalidArgument("exactly one of text or vector is required", "text");
      if (text !== undefined) {
        if (text.trim() === "") throw new InvalidArgument("text is empty; give words to search for, or a vector", "text");
        checkLength(text, MAX_QUERY_CHARS, "text");
      }
      if (vector) {
        if (vector.length === 0) throw new InvalidArgument("vector.values is empty", "vector.values");
        const bad = vector.findIndex((x) => !Number.isFinite(x));
        if (bad >= 0) throw new InvalidArgument(`vector.values[${bad}] is ${vector[bad]}; only finite numbers are accepted`, "vector.values");
      }
      if (!Number.isFinite(req.minScore)) throw new InvalidArgument(`min_score ${req.minScore} must be a finite number`, "min_score");
      if (req.topK < 0 || req.topK > MAX_TOP_K) throw new InvalidArgument(`top_k ${req.topK} must be from 1 to ${MAX_TOP_K} (0 means 10)`, "top_k");
      const topK = req.topK || 10;
      const mode: SearchMode = req.searchMode === SearchMode.UNSPECIFIED || req.searchMode === SearchMode.AUTO ? (text !== undefined ? SearchMode.HYBRID : SearchMode.VECTOR) : req.searchMode;
      if (mode === SearchMode.HYBRID && text === undefined) throw new InvalidArgument("search_mode SEARCH_MODE_HYBRID needs a text query (full-text ranking has no words in a vector)", "search_mode");
      if (mode !== SearchMode.HYBRID && mode !== SearchMode.VECTOR) throw new InvalidArgument(`search_mode ${req.searchMode} is not a SearchMode`, "search_mode");
      // The bucket's existence and its collections, in one round trip's time.
      let [, pipelines] = await Promise.all([buckets.get(scope), vectorPipelines(scope)]);
      if (req.collectionName) pipelines = [await collectionOf(scope, req.collectionName, "collection_name", pipelines)];
      const statuses: CollectionStatus[] = [];
      const queries = await queryVectors(pipelines, text, vector, scope.signal ?? new AbortController().signal);
      const usable: Pipeline[] = [];
      const held = await index.dimensionsOf(scope, pipelines.map((p) => p.pipelineId));
      const modelless: string[] = [];
      for (const p of pipelines) {
        const dims = held.dims.get(p.pipelineId) ?? 0;
        const q = queries.get(p.pipelineId);
        if (!q) {
          // Pushed vectors without an embed model: a text query cannot be put in their space.
          const why = `collection ${quote(p.name)} has no embed_model, so it answers vector queries only`;
          if (req.collectionName) throw new FailedPrecondition(`${why}; search it with a vector, or make it with an embed_model`);
          modelless.push(why);
          statuses.push({ collectionName: p.name, status: "skipped", error: "no embed_model: vector queries only" } as CollectionStatus);
          continue;
        }
        if (dims !== 0 && dims !== q.length) {
          if (req.collectionName) throw new InvalidArgument(`the query vector has ${q.length} dimensions; collection ${quote(p.name)} has ${dims}`, "vector.values");
          statuses.push({ collectionName: p.name, status: "skipped", error: `dimension ${dims} does not fit the query's ${q.length}` } as CollectionStatus);
          continue;
        }
        usable.push(p);
        statuses.push({ collectionName: p.name, status: "ok", error: "" } as CollectionStatus);
      }
      if (usable.length === 0 && modelless.length === statuses.length && statuses.length > 0) throw new FailedPrecondition(`${modelless.join("; ")}: search with a vector`);
      if (usable.length === 0 && statuses.length > 0) {
        const q = (queries.values().next().value as Float32Array).length;
        throw new InvalidArgument(`the query vector has ${q} dimensions; ${statuses.filter((st) => st.error.startsWith("dimension")).map((st) => `collection ${quote(st.collectionName)} has ${st.error.split(" ")[1]}`).join("; ")}`, "vector.values");
      }
      if (pipelines.length === 0 && !req.collectionName) throw new FailedPrecondition(`bucket ${quote(req.bucket)} has no vector collection yet; add one with POST /${req.bucket}/vector/pipelines (or /${req.bucket}/vector/collections for vectors you push)`);

      const prefix = req.filter?.keyPrefix ?? "";
      const meta = req.filter?.metadata ?? {};
      const allowed = Object.keys(meta).length ? await store.keysWithMetadata(scope, meta) : undefined;
      const accept = prefix || allowed ? (key: string) => key.startsWith(prefix) && (!allowed || allowed.has(key)) : undefined;
      const candidates = mode === SearchMode.HYBRID ? Math.min(MAX_TOP_K, Math.max(topK * 4, 100)) : topK;
      const ids = usable.map((p) => p.pipelineId);
      // The full-text ranking runs in PostgreSQL while this thread scans the vectors.
      const textRanked = mode === SearchMode.HYBRID ? store.textRanking(scope, ids, terms(text ?? ""), candidates, prefix, index.liveChunks(scope, ids)) : undefined;
      textRanked?.catch(() => undefined); // awaited below; not unhandled if the scan throws first
      const dense: Hit[] = [];
      // The best topK of each collection get exact cosines; hybrid's extra candidates only lend their rank.
      for (const p of usable) dense.push(...(await index.search(scope, [p.pipelineId], queries.get(p.pipelineId) as Float32Array, candidates, accept, held.versions, req.includeContent, topK)));
      dense.sort((a, b) => b.score - a.score);
      let ranked: Hit[] = dense.slice(0, candidates);
      if (textRanked) {
        const textHits = (await textRanked).filter((h) => !allowed || allowed.has(h.key));
        const fused = new Map<string, Hit>();
        const add = (list: Array<ChunkRef & { place?: ChunkPlaceRow }>) =>
          list.forEach((h, i) => {
            const k = refKey(h);
            const prev = fused.get(k);
            fused.set(k, { pipelineId: h.pipelineId, key: h.key, chunkIndex: h.chunkIndex, score: (prev?.score ?? 0) + 1 / (RRF_K + i + 1), place: prev?.place ?? h.place });
          });
        add(ranked);
        add(textHits);
        ranked = [...fused.values()].sort((a, b) => b.score - a.score);
      }
      ranked = ranked.filter((h) => h.score >= req.minScore).slice(0, topK);
      // Places came with the reranked hits' vectors; full-text hits and hybrid's unreranked ones still need theirs.
      const missing = ranked.filter((h) => !h.place);
      const places = missing.length ? await store.places(scope, missing, req.includeContent) : new Map<string, ChunkPlaceRow>();
      for (const h of missing) h.place = places.get(refKey(h));
      // A hit whose row is gone was deleted during this search: it is not an answer.
      ranked = ranked.filter((h) => h.place);
      const names = new Map(usable.map((p) => [p.pipelineId, p.name]));
      const pushed = new Set(usable.filter((p) => p.template === EXTERNAL).map((p) => p.pipelineId));
      const results = ranked.map(
        (h) =>
          ({
            object: { bucket: req.bucket, key: h.key },
            score: h.score,
            chunkIndex: h.chunkIndex,
            collectionName: names.get(h.pipelineId) ?? "",
            pipelineId: h.pipelineId,
            content: h.place?.content ?? "",
            page: h.place?.page ?? 0,
            heading: h.place?.heading ?? "",
            charStart: h.place?.charStart ?? 0,
            charEnd: h.place?.charEnd ?? 0,
            vectorId: pushed.has(h.pipelineId) ? h.key : "",
          }) as SearchResult,
      );
      return { results, searchMode: mode, collectionStatuses: statuses, tookMs: Math.round(performance.now() - started) };
    },
  };
}
