// The settings bench/consume.py passes to the Node.js BullMQ scripts, as JSON in BENCH_CONFIG:
// { queue, prefix, concurrency, redis: ioredis options, pg: node-postgres options, sql, jobsFile }
// The URLs are already converted (a unix-socket DATABASE_URL becomes pg's host = socket dir).

export const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}');

for (const key of ['queue', 'prefix', 'redis']) {
  if (config[key] === undefined) {
    throw new Error(`BENCH_CONFIG lacks "${key}"`);
  }
}

// ioredis options for BullMQ: workers block on Redis, so no per-request retry limit.
export const connection = { ...config.redis, maxRetriesPerRequest: null };

// Exit when the parent (the benchmark) goes away, even if it was killed: stdin closes.
export function exitWithParent(cleanup) {
  process.stdin.on('end', () => cleanup().finally(() => process.exit(0)));
  process.stdin.resume();
}
