// Adds the benchmark's jobs to a BullMQ queue on Node.js, all at once (addBulk), each with
// removeOnComplete. Loads and parses every job first and prints "ready"; then, for each line
// on stdin (a number n: the first n jobs), enqueues them and prints
// {"startedAtMs": epoch ms of the first add, "cpuSeconds", "jobs"}. Exits when stdin closes.
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

for await (const line of createInterface({ input: process.stdin })) {
  const count = Number(line);
  if (!(Number.isInteger(count) && count > 0 && count <= jobs.length)) {
    throw new Error(`expected a number of jobs in 1..${jobs.length}, got ${JSON.stringify(line)}`);
  }
  const batch = jobs.slice(0, count);
  const startedAtMs = performance.timeOrigin + performance.now();
  const cpuBefore = process.cpuUsage();
  await queue.addBulk(batch);
  const cpu = process.cpuUsage(cpuBefore);
  process.stdout.write(
    `${JSON.stringify({ startedAtMs, cpuSeconds: (cpu.user + cpu.system) / 1e6, jobs: batch.length })}\n`,
  );
}
await queue.close();
