-- wrk `done` hook: latency percentiles (microseconds) for the CDF plots of bench/report.py.
done = function(summary, latency, requests)
  io.write("latency-percentiles\n")
  local points = {0}
  for p = 1, 99 do points[#points + 1] = p end
  for _, p in ipairs({99.5, 99.9, 99.99, 100}) do points[#points + 1] = p end
  for _, p in ipairs(points) do
    local value = p == 0 and latency.min or (p == 100 and latency.max or latency:percentile(p))
    io.write(string.format("%g %d\n", p, value))
  end
  io.write("end-latency-percentiles\n")
end
