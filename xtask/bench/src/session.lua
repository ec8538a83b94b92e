-- wrk script of `cargo xtask bench` (HTTP part). One session per connection: wrk runs as
-- many threads as connections (-t N -c N), and thread i sends line i of the file named by
-- BENCH_COOKIES as its Cookie header (sessions the harness created beforehand). A thread
-- past the file's last line (an empty file: all of them) sends no cookie, so each of its
-- requests starts a new session.
-- Prints one `BENCH_JSON {...}` line with the totals the harness reads.

local cookies, handed_out = {}, 0
for line in io.lines(os.getenv("BENCH_COOKIES")) do
  cookies[#cookies + 1] = line
end

function setup(thread)
  handed_out = handed_out + 1
  if cookies[handed_out] then
    thread:set("cookie", cookies[handed_out])
  end
end

function init(args)
  if cookie then
    wrk.headers["Cookie"] = cookie
  end
end

-- With BENCH_MIX set, the read-mostly mix: every tenth request of a connection is
-- GET /counter (a write), the others the run's path (GET /peek).
local mix, sent = os.getenv("BENCH_MIX") ~= nil, 0

function request()
  sent = sent + 1
  if mix and sent % 10 == 0 then
    return wrk.format("GET", "/counter")
  end
  return wrk.format("GET", wrk.path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non_2xx":%d,"socket_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write, e.timeout))
end
