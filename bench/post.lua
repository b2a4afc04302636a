wrk.method = "POST"
wrk.headers["User-Agent"] = "wrk"
