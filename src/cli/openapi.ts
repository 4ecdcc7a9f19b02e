/** Prints the OpenAPI document of the REST door (the build writes it to dist/openapi.json). */
import { SERVICES } from "../service/descriptors";
import { buildOpenApi } from "../transport/openapi";
import { VERSION } from "../version";

process.stdout.write(JSON.stringify(buildOpenApi([...SERVICES], VERSION), null, 2) + "\n");
