/**
 * One check of every string a request carries, on every door: path ids, query filters,
 * names, descriptions, patterns, option keys and values, nested or in lists and maps.
 * NUL and the other C0 control characters (tab and line breaks excepted) and malformed
 * UTF-16 are refused with INVALID_ARGUMENT naming the field, before any of it reaches a
 * group-commit batch or PostgreSQL (which refuses NUL in text and jsonb). Object keys and
 * key prefixes follow S3 instead: any UTF-8 but NUL.
 */
import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { InvalidArgument } from "../domain/errors";
import { quote } from "../domain/validate";

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

function checkString(value: string, field: string): void {
  const m = CONTROL.exec(value);
  if (m) {
    const cp = m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
    throw new InvalidArgument(
      `${field} ${quote(value.replace(CONTROL, "\uFFFD"), 60)} contains the control character U+${cp} at position ${m.index}; only printable characters, tabs and line breaks are accepted`,
      field,
    );
  }
  if (!value.isWellFormed()) {
    throw new InvalidArgument(`${field} is not well-formed Unicode (it has an unpaired surrogate)`, field);
  }
}

/** Object keys, prefixes and delimiters are S3 keys: any UTF-8 but NUL (checkObjectKey says the rest). */
const KEY_FIELDS = new Set(["key", "prefix", "key_prefix", "delimiter", "start_after"]);

function checkKeyString(value: string, field: string): void {
  const at = value.indexOf("\0");
  if (at >= 0) throw new InvalidArgument(`${field} contains NUL at position ${at}; any other UTF-8 is accepted`, field);
  if (!value.isWellFormed()) throw new InvalidArgument(`${field} is not well-formed Unicode (it has an unpaired surrogate)`, field);
}

type Msg = Record<string, unknown>;

function fieldValue(msg: Msg, f: DescField): unknown {
  if (f.oneof) {
    const o = msg[f.oneof.localName] as { case?: string; value?: unknown } | undefined;
    return o?.case === f.localName ? o.value : undefined;
  }
  return msg[f.localName];
}

/** Throws InvalidArgument at the first string field of `msg` (of `desc`) holding a control character. */
export function checkStringFields(desc: DescMessage, msg: unknown, prefix = ""): void {
  if (msg === null || typeof msg !== "object") return;
  for (const f of desc.fields) {
    const v = fieldValue(msg as Msg, f);
    if (v === undefined || v === null) continue;
    const name = prefix + f.name;
    switch (f.fieldKind) {
      case "scalar":
        if (f.scalar === ScalarType.STRING) (KEY_FIELDS.has(f.name) ? checkKeyString : checkString)(v as string, name);
        break;
      case "message":
        checkStringFields(f.message, v, `${name}.`);
        break;
      case "list":
        (v as unknown[]).forEach((item, i) => {
          if (f.listKind === "scalar" && f.scalar === ScalarType.STRING) checkString(item as string, `${name}[${i}]`);
          else if (f.listKind === "message") checkStringFields(f.message, item, `${name}[${i}].`);
        });
        break;
      case "map":
        for (const [k, item] of Object.entries(v as Msg)) {
          if (f.mapKey === ScalarType.STRING) checkString(k, `${name} key`);
          const at = `${name}[${JSON.stringify(k.slice(0, 40))}]`;
          if (f.mapKind === "scalar" && f.scalar === ScalarType.STRING) checkString(item as string, at);
          else if (f.mapKind === "message") checkStringFields(f.message, item, `${at}.`);
        }
        break;
      default:
        break;
    }
  }
}
