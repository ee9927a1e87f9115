/**
 * Builds the shared-memory addon (native/cohort_shm.cc) with node-gyp; run by
 * `npm install` (the root package's own install script). Node's headers are taken from
 * the installation that runs this script (`--nodedir`), never downloaded.
 *
 *   node native/build.mjs          # what npm install runs
 *   NODEDIR=/opt/node node native/build.mjs
 *
 * A failed build is reported with the fix and does not fail the install: cohort then
 * works over TCP only, and debugInfo() says why shared memory is unavailable.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const statusFile = join(root, 'build', 'cohort-shm-status.json')

function nodeDir () {
  const candidates = [process.env.NODEDIR, process.env.npm_config_nodedir, dirname(dirname(process.execPath))].filter(Boolean)
  return candidates.find(dir => existsSync(join(dir, 'include', 'node', 'node_api.h')))
}

function report (ok, reason) {
  mkdirSync(dirname(statusFile), { recursive: true })
  writeFileSync(statusFile, JSON.stringify({ ok, reason, at: new Date().toISOString() }) + '\n')
}

function fail (reason, fix) {
  report(false, reason)
  console.error(`\ncohort: the shared-memory addon was NOT built: ${reason}\n  fix: ${fix}\n  cohort still works, over TCP only (debugInfo() shows shm as unavailable).\n`)
  process.exit(0)
}

if (process.platform !== 'linux') fail(`platform ${process.platform} is not supported (memfd, eventfd and SCM_RIGHTS are Linux)`, 'use Linux for shared memory')
const dir = nodeDir()
if (dir == null) {
  fail(`Node's headers (include/node/node_api.h) were not found next to ${process.execPath}`,
    'install the headers of this Node (Debian: apt-get install libnode-dev; or a Node tarball) and set NODEDIR=<dir holding include/node>, then npm install again')
}
let gyp
try {
  gyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js')
} catch {
  fail('node-gyp is not installed', 'npm install --no-audit --no-fund (node-gyp is a dependency of cohort)')
}
const result = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${dir}`, '--jobs=2'], { cwd: root, stdio: 'inherit' })
if (result.status !== 0) {
  fail(`node-gyp rebuild exited with ${result.status ?? result.signal}`,
    'install a C++ compiler, make and python3 (Debian: apt-get install g++ make python3), then npm install again')
}
report(true, undefined)
console.log('cohort: built the shared-memory addon (build/Release/cohort_shm.node)')
