/**
 * The registry of implemented services shared by the three doors. Each method is wrapped
 * once so that every door reports errors the same way.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import type { Logger } from "../log";
import { toConnectError } from "./errors";

/** A unary handler: request message in, response init shape out. */
export type UnaryHandler = (req: unknown, ctx: HandlerContext) => Promise<unknown>;

/** One service and its implementation keyed by method local name. */
export interface ServiceEntry {
  service: DescService;
  methods: ReadonlyMap<DescMethod, UnaryHandler>;
  /** The implementation object, as Connect's router expects it. */
  impl: Record<string, UnaryHandler>;
}

/** Wraps every method of `impl` so that thrown errors leave as ConnectErrors. */
export function registerService(service: DescService, impl: object, log: Logger): ServiceEntry {
  const methods = new Map<DescMethod, UnaryHandler>();
  const wrapped: Record<string, UnaryHandler> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary") throw new Error(`${method.name}: only unary methods are supported`);
    const fn = (impl as Record<string, UnaryHandler | undefined>)[method.localName];
    if (!fn) throw new Error(`${service.typeName}.${method.name} has no implementation`);
    const handler: UnaryHandler = async (req, ctx) => {
      try {
        return await fn.call(impl, req, ctx);
      } catch (err) {
        throw toConnectError(err, log);
      }
    };
    methods.set(method, handler);
    wrapped[method.localName] = handler;
  }
  return { service, methods, impl: wrapped };
}
