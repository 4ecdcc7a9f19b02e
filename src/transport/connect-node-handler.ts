/**
 * connect-node for what connect-unary.ts leaves to it (Connect GETs, streams, gRPC-Web):
 * the router connectNodeAdapter builds, and its request handler, but with our own ending
 * for a call that fails after its answer started. connectNodeAdapter printed such a failure
 * with console.error — a stack trace outside the JSON log — and did so whenever a client
 * left a stream while a message was being written to it (a watcher closed mid-snapshot).
 * A client that left is not an error here; anything else is one line of the log.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Code, ConnectError, createConnectRouter, type ConnectRouter, type ConnectRouterOptions } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Logger } from "../log";

/** What failed writing an answer because its client had gone (the socket closed or reset under the write). */
const CLIENT_GONE = new Set(["ERR_STREAM_DESTROYED", "ERR_STREAM_WRITE_AFTER_END", "EPIPE", "ECONNRESET", "ERR_HTTP2_STREAM_ERROR", "ERR_HTTP2_INVALID_STREAM"]);

function clientLeft(req: IncomingMessage, res: ServerResponse, err: ConnectError): boolean {
  if (err.code === Code.Aborted || err.code === Code.Canceled || res.destroyed || req.socket?.destroyed) return true;
  const cause = err.cause as { code?: unknown } | undefined;
  return typeof cause?.code === "string" && CLIENT_GONE.has(cause.code);
}

/** A request listener serving the routes `routes` registers, as connectNodeAdapter would. */
export function connectNodeHandler(options: ConnectRouterOptions & { routes(router: ConnectRouter): void; log: Logger }): (req: IncomingMessage, res: ServerResponse) => void {
  const router = createConnectRouter({ acceptCompression: [compressionGzip, compressionBrotli], ...options });
  options.routes(router);
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  return (req, res) => {
    const handler = paths.get((req.url ?? "").split("?", 1)[0]);
    if (!handler) {
      res.writeHead(404).end();
      return;
    }
    handler(universalRequestFromNodeRequest(req, res, undefined, undefined))
      .then((answer) => universalResponseToNodeResponse(answer, res))
      .catch((reason: unknown) => {
        const err = ConnectError.from(reason);
        if (clientLeft(req, res, err)) return;
        options.log.error("a call failed while its answer was written", { rpc: `${handler.service.typeName}/${handler.method.name}`, err: err.message });
        if (res.headersSent) res.destroy();
        else res.writeHead(500).end();
      });
  };
}
