-- The wrk script of scripts/bench and scripts/api-checks: POST to the URL wrk is given, then
-- print one JSON line: requests, seconds, transport errors, non-2xx answers, latency percentiles.
wrk.method = "POST"
wrk.headers["User-Agent"] = "wrk"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
