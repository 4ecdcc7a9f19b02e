/**
 * `k3-ingest credentials store|ls|validate|rm` (SourceService's credential calls), over
 * Connect like the other client commands. The CLI stores access keys, which external S3
 * sources sign with (`sources create … --credential ID`); the secret is read from
 * K3_CREDENTIAL_SECRET, never from the command line (where `ps` would show it). Other kinds
 * of credential go through the API.
 */
import { toJson } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { CredentialType, SourceProvider, SourceService, type CredentialInfo } from "../../gen/dodil/k3/source/v1/source_pb";
import { render, type Out } from "./common";

/** What the credential commands need from the command line. */
export interface CredentialCommandContext {
  sources: Client<typeof SourceService>;
  asJson: boolean;
  out: Out;
  env: NodeJS.ProcessEnv;
  args: string[];
  flags: { name?: string; source?: string; accessKeyId?: string };
  usage(message: string): Error;
}

const HEADER = ["CREDENTIAL", "PROVIDER", "TYPE", "NAME", "HINT", "SOURCE"];
const row = (c: CredentialInfo) => [c.credentialId, SourceProvider[c.provider], CredentialType[c.credentialType], c.displayName, c.hint, c.sourceId];

/** Runs `credentials store|ls|validate|rm`. */
export async function credentialCommand(c: CredentialCommandContext, verb: string | undefined): Promise<number> {
  const m = SourceService.method;
  const id = () => {
    if (!c.args[0]) throw c.usage("CREDENTIAL_ID is required");
    return c.args[0];
  };
  switch (verb) {
    case "store": {
      if (!c.flags.name) throw c.usage("--name is required: what the credential is called");
      if (!c.flags.accessKeyId) throw c.usage("--access-key-id is required (the secret comes from K3_CREDENTIAL_SECRET)");
      const secret = c.env.K3_CREDENTIAL_SECRET ?? "";
      if (!secret) throw c.usage("K3_CREDENTIAL_SECRET is empty: put the secret access key there, not on the command line");
      const res = await c.sources.storeCredential({
        provider: SourceProvider.EXTERNAL_S3,
        credentialType: CredentialType.ACCESS_KEY,
        displayName: c.flags.name,
        sourceId: c.flags.source ?? "",
        credentialData: { case: "accessKey", value: { accessKeyId: c.flags.accessKeyId, secretAccessKey: secret } },
      });
      render(c.out, c.asJson, m.storeCredential.output, res, HEADER, [row(res.credential!)]);
      return 0;
    }
    case "ls":
    case "list": {
      const res = await c.sources.listCredentials({ sourceId: c.flags.source ?? "", pageSize: 1000 });
      render(c.out, c.asJson, m.listCredentials.output, res, HEADER, res.credentials.map(row));
      return 0;
    }
    case "validate": {
      const res = await c.sources.validateCredential({ credentialId: id() });
      c.out.write(c.asJson ? JSON.stringify(toJson(m.validateCredential.output, res), null, 2) + "\n" : `${res.valid ? "valid" : "not valid"}: ${res.message}\n`);
      return res.valid ? 0 : 1;
    }
    case "rm":
    case "delete":
      await c.sources.deleteCredential({ credentialId: id() });
      c.out.write(c.asJson ? "{}\n" : "deleted\n");
      return 0;
  }
  throw c.usage(`unknown credentials command ${verb ?? ""}`);
}
