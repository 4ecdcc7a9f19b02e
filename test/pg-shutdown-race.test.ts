/**
 * A server shutting down can answer a new connection's handshake and terminate it in one
 * read (ReadyForQuery, then FATAL 57P01): pg-pool hands the client out and drops its own
 * error listener before the checkout's promise settles, so without a listener of ours the
 * FATAL is an unhandled 'error' event and the process dies. Here a loopback server plays
 * that PostgreSQL; the call must fail as a clean UNAVAILABLE and the process carry on.
 */
import { createServer, type AddressInfo, type Server } from "node:net";
import { PgRepository } from "../src/storage/postgres/repository";

/** One backend message: its type byte, its length, its body. */
const message = (type: string, body: Buffer) => {
  const head = Buffer.alloc(5);
  head.write(type, 0, "latin1");
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
};
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const fields = (pairs: Array<[string, string]>) => Buffer.concat([...pairs.map(([k, v]) => Buffer.from(`${k}${v}\0`, "utf8")), Buffer.from([0])]);

/** Answers every startup with AuthenticationOk, BackendKeyData, ReadyForQuery and FATAL 57P01 in one write, then closes. */
function dyingPostgres(): Promise<Server> {
  const reply = Buffer.concat([
    message("R", int32(0)),
    message("K", Buffer.concat([int32(4242), int32(77)])),
    message("Z", Buffer.from("I", "latin1")),
    message("E", fields([["S", "FATAL"], ["V", "FATAL"], ["C", "57P01"], ["M", "terminating connection due to administrator command"]])),
  ]);
  const server = createServer((socket) => {
    let got = Buffer.alloc(0);
    socket.on("data", (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 4 && got.length >= got.readInt32BE(0)) {
        socket.write(reply);
        socket.end();
      }
    });
    socket.on("error", () => undefined);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

test("a connection terminated in the same read as its handshake fails the call, not the process", async () => {
  const server = await dyingPostgres();
  const port = (server.address() as AddressInfo).port;
  const repo = new PgRepository({ connectionString: `postgres://k3@127.0.0.1:${port}/k3`, poolSize: 2 });
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.on("uncaughtException", onUncaught);
  try {
    for (let i = 0; i < 5; i++) {
      // A checkout through the promise API, as every transaction and cancellable statement takes one.
      await expect(repo.vector.chunksOf({ org: "default", bucket: "b" }, "p", ["k"])).rejects.toMatchObject({ kind: "unavailable" });
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(uncaught).toEqual([]);
  } finally {
    process.off("uncaughtException", onUncaught);
    await repo.pool.end().catch(() => undefined);
    server.close();
  }
});
