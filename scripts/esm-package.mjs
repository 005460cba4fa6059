#!/usr/bin/env node
// Marks a build folder as ES modules: writes `<dir>/package.json` with `"type": "module"`, so that
// Node (and TypeScript's node16/nodenext resolution) read the `.js` files there as ESM.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: esm-package.mjs <dir>');
  process.exit(2);
}
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
