-- wrk: POST /v1/orders, one unit of a random product, each under a fresh
-- Idempotency-Key. Reads TENX_BENCH_TOKEN, TENX_BENCH_PRODUCTS (comma-separated
-- ids) and TENX_BENCH_KEY_PREFIX.
local counter = 0
local headers = {
  ["Authorization"] = "Bearer " .. os.getenv("TENX_BENCH_TOKEN"),
  ["Content-Type"] = "application/json",
}
local products = {}
for id in string.gmatch(os.getenv("TENX_BENCH_PRODUCTS"), "[^,]+") do
  products[#products + 1] = id
end
local prefix = os.getenv("TENX_BENCH_KEY_PREFIX")

request = function()
  counter = counter + 1
  headers["Idempotency-Key"] = prefix .. counter
  local body = '{"items": [{"product_id": "' .. products[math.random(#products)] ..
    '", "quantity": 1}], "payment_method": "pm_card_visa"}'
  return wrk.format("POST", "/v1/orders", headers, body)
end

-- The first refusal, to say why (wrk counts the rest as non-2xx).
local told = false
response = function(status, headers, body)
  if status ~= 201 and not told then
    told = true
    print("first non-2xx: " .. status .. " " .. body)
  end
end
