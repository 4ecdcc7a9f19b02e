/**
 * The built-in pipeline templates: what kind of destination each writes to and which
 * options it understands. Executors live in src/worker; this module only knows names,
 * kinds and option rules, so the API can validate a pipeline or a trigger up front.
 */
import { nearest } from "./suggest";
import { InvalidArgument } from "./errors";
import { textEncodingOf } from "./text-encoding";

/** How one option value is checked. */
interface OptionSpec {
  /** Inclusive integer range, when the option is an integer. */
  int?: { min: number; max: number };
  /** The accepted values, when the option is an enum. */
  oneOf?: readonly string[];
  /** The longest value, in characters, when the option is free text. */
  maxLength?: number;
  /** Accepts "auto" or a text encoding's label, when the option names how bytes are text. */
  textEncoding?: true;
}

/** A template's static description. */
export interface TemplateSpec {
  name: string;
  /** "vector", "warehouse" or "" (free pipeline). */
  kind: string;
  options: Readonly<Record<string, OptionSpec>>;
}

/** Smallest and largest chunk, in characters: below the floor, chunks × dimensions explodes. */
export const MIN_CHUNK_SIZE = 32;
export const MAX_CHUNK_SIZE = 100_000;

const TEMPLATES: Readonly<Record<string, TemplateSpec>> = {
  text_embedding_index: {
    name: "text_embedding_index",
    kind: "vector",
    options: {
      chunk_size: { int: { min: MIN_CHUNK_SIZE, max: MAX_CHUNK_SIZE } },
      chunk_overlap: { int: { min: 0, max: MAX_CHUNK_SIZE / 2 } },
      batch_size: { int: { min: 1, max: 2048 } },
      dimensions: { int: { min: 1, max: 8192 } },
      embedding_model: {},
      encoding: { textEncoding: true },
    },
  },
  structured_rows: {
    name: "structured_rows",
    kind: "warehouse",
    options: {
      batch_size: { int: { min: 1, max: 100_000 } },
      format: { oneOf: ["auto", "csv", "jsonl", "json", "xlsx"] },
      delimiter: { oneOf: ["auto", "comma", "semicolon", "tab", "pipe"] },
      /** An .xlsx's sheet by name (Excel allows up to 31 characters); empty for the first. */
      sheet: { maxLength: 31 },
      encoding: { textEncoding: true },
    },
  },
  noop: {
    name: "noop",
    kind: "",
    options: {},
  },
};

/** Names of the built-in templates, sorted. */
export const TEMPLATE_NAMES: readonly string[] = Object.keys(TEMPLATES).sort();

/** Returns the template or throws InvalidArgument listing the known ones. */
export function getTemplate(name: string, field = "scriptum_template"): TemplateSpec {
  const t = Object.hasOwn(TEMPLATES, name) ? TEMPLATES[name] : undefined;
  if (!t) {
    throw new InvalidArgument(
      `${field} "${name}" is not a known template; known templates: ${TEMPLATE_NAMES.join(", ")}`,
      field,
    );
  }
  return t;
}

/**
 * Refuses option keys the template does not know (a misspelled `chunksize` would otherwise
 * be stored and silently ignored), naming the nearest known key and listing them all.
 */
export function checkOptionKeys(template: TemplateSpec, keys: Iterable<string>, field = "options"): void {
  const known = Object.keys(template.options);
  for (const key of keys) {
    if (Object.hasOwn(template.options, key)) continue;
    const near = nearest(key, known);
    const hint = near ? `did you mean "${near}"? ` : "";
    throw new InvalidArgument(
      `${field}["${key.slice(0, 80)}"] is not an option of template ${template.name}; ${hint}${known.length ? `its options are ${known.join(", ")}` : "it takes no options"}`,
      `${field}.${key.slice(0, 80)}`,
    );
  }
}

/**
 * Checks the values of the options the template understands (keys are checkOptionKeys'
 * business: a pipeline stored before keys were checked still runs). Throws
 * InvalidArgument naming the option and value.
 */
export function checkTemplateOptions(
  template: TemplateSpec,
  options: Readonly<Record<string, string>>,
  field = "options",
): void {
  for (const [key, value] of Object.entries(options)) {
    const spec = Object.hasOwn(template.options, key) ? template.options[key] : undefined;
    if (!spec) continue;
    if (spec.int) {
      const n = /^-?\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
      if (!Number.isSafeInteger(n) || n < spec.int.min || n > spec.int.max) {
        throw new InvalidArgument(
          `${field}["${key}"] = "${value}" must be an integer from ${spec.int.min} to ${spec.int.max}`,
          `${field}.${key}`,
        );
      }
    }
    const length = spec.maxLength === undefined ? 0 : [...value].length;
    if (spec.maxLength !== undefined && length > spec.maxLength) {
      throw new InvalidArgument(
        `${field}["${key}"] is ${length} characters long; at most ${spec.maxLength}`,
        `${field}.${key}`,
      );
    }
    if (spec.textEncoding && value !== "auto" && !textEncodingOf(value)) {
      throw new InvalidArgument(
        `${field}["${key}"] = "${value}" names no text encoding; pass auto (UTF-8, or UTF-16 after its byte-order mark) or an encoding's label: windows-1252, iso-8859-15, shift_jis, gbk, big5, euc-kr, koi8-r, utf-16le…`,
        `${field}.${key}`,
      );
    }
    if (spec.oneOf && !spec.oneOf.includes(value)) {
      throw new InvalidArgument(
        `${field}["${key}"] = "${value}" must be one of ${spec.oneOf.join(", ")}`,
        `${field}.${key}`,
      );
    }
  }
  if (template.name === "text_embedding_index") {
    const size = Number(options.chunk_size ?? "1000");
    const overlap = Number(options.chunk_overlap ?? "150");
    // At most half a chunk of overlap: every window then moves on by half a chunk or more,
    // so the chunks never hold more than twice the text.
    if (overlap * 2 > size) {
      throw new InvalidArgument(
        `${field}["chunk_overlap"] = "${overlap}" must be at most half of chunk_size (${size})`,
        `${field}.chunk_overlap`,
      );
    }
  }
}
