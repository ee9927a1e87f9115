/**
 * The child process of a benchmark: `node dist/bench/server.js <stack>` serves that
 * stack's echo on loopback and talks to the parent over IPC (see harness.ts).
 */
import '../src/transports/tcp/polyfill.js' // before any libp2p module: Node 20 lacks Promise.withResolvers
import { serveInChild } from './harness.js'
import { stackById } from './tcp/stacks.js'

serveInChild(stackById(process.argv[2] ?? ''))
