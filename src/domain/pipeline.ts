/** Pipelines and rules as the domain sees them. Times are Unix epoch milliseconds. */

/** A pipeline: a built-in template plus stored options. */
export interface Pipeline {
  pipelineId: string;
  org: string;
  bucket: string;
  name: string;
  description: string;
  template: string;
  options: Record<string, string>;
  storeEntityId: string;
  storeEntityKind: string;
  createdAt: number;
  updatedAt: number;
}

/** A routing rule: objects matching it are ingested by its pipeline. */
export interface Rule {
  ruleId: string;
  org: string;
  bucket: string;
  sourceId: string;
  pipelineId: string;
  name: string;
  description: string;
  includePatterns: string[];
  excludePatterns: string[];
  includeMimeTypes: string[];
  excludeMimeTypes: string[];
  minSizeBytes: number;
  maxSizeBytes: number;
  enabled: boolean;
  priority: number;
  createdAt: number;
  updatedAt: number;
}

/** A rule with the display data of the pipeline it binds (empty when it is gone). */
export interface BoundRule extends Rule {
  bindingName: string;
  bindingKind: string;
}

/** The editable fields of a rule. */
export type RuleFields = Omit<Rule, "ruleId" | "org" | "bucket" | "createdAt" | "updatedAt">;

/** The editable fields of a pipeline. */
export type PipelineFields = Pick<
  Pipeline,
  "name" | "description" | "template" | "options" | "storeEntityId" | "storeEntityKind"
>;
