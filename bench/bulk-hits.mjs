// Hit cost under a V8 setting: autocannon (32 connections, SECONDS s) on a cached 1 KiB object through a proxy at URL
// with pid PID; prints requests/s and the proxy's CPU per request (schedstat), and its RSS afterwards.
// Usage: node bench/bulk-hits.mjs URL PID [SECONDS]
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { request } from 'undici';
import { cpuMicros } from './lib.mjs';
const [url, pidArg, secArg] = process.argv.slice(2);
const pid = Number(pidArg);
const seconds = Number(secArg ?? 5);
await (await request(`${url}/static/1k`)).body.text();
const cannon = () => new Promise((resolve, reject) => autocannon({ url: `${url}/static/1k`, connections: 32, duration: seconds }, (e, r) => (e ? reject(e) : resolve(r))));
await cannon();
const c0 = cpuMicros(pid);
const r = await cannon();
const us = cpuMicros(pid) - c0;
const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
console.log(JSON.stringify({ rps: Math.round(r.requests.average), cpuMicrosPerRequest: Number((us / r.requests.total).toFixed(1)), rssKiB: rss }));
