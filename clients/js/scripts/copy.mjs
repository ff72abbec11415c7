// prepack: the canonical client lives in the Python package
// (sanic_chat/static/, served by the blueprint); the npm package gets a
// copy of it at pack time, so there is one source and no drift.
import { copyFileSync } from "node:fs";

for (const name of ["client.js", "client.d.ts"]) {
  copyFileSync(new URL(`../../../sanic_chat/static/${name}`, import.meta.url), new URL(`../${name}`, import.meta.url));
}
