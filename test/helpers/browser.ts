/**
 * Debian's Chromium (/usr/bin/chromium, installed by scripts/system-deps.mjs) driven by
 * playwright-core, with the flags this machine needs: no sandbox (root), no GPU, and none of the
 * background connections that a closed network would refuse.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { ROOT } from './demo';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** Where a test saves a screenshot: test-results/<name> (git-ignored), folder made if needed. */
export function screenshotPath(name: string): string {
  const dir = join(ROOT, 'test-results');
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}
