// Adds the benchmark's jobs to a BullMQ queue on Node.js, all at once (addBulk), each with
// removeOnComplete. Loads and parses every job first, prints "ready", waits for a line on
// stdin, then enqueues and prints {"startedAtMs": epoch ms of the first add, "cpuSeconds"}.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Queue } from 'bullmq';

import { config, connection } from './config.mjs';

const jobs = readFileSync(config.jobsFile, 'utf8')
  .split('\n')
  .filter((line) => line.length > 0)
  .map((line) => ({ name: 'batch', data: JSON.parse(line), opts: { removeOnComplete: true } }));

const queue = new Queue(config.queue, { connection, prefix: config.prefix });
await queue.waitUntilReady();
process.stdout.write('ready\n');

const lines = createInterface({ input: process.stdin });
const iterator = lines[Symbol.asyncIterator]();
const go = await iterator.next();
if (go.done) process.exit(1); // the benchmark went away

const startedAtMs = performance.timeOrigin + performance.now();
const cpuBefore = process.cpuUsage();
await queue.addBulk(jobs);
const cpu = process.cpuUsage(cpuBefore);
process.stdout.write(
  `${JSON.stringify({ startedAtMs, cpuSeconds: (cpu.user + cpu.system) / 1e6, jobs: jobs.length })}\n`,
);
lines.close();
await queue.close();
