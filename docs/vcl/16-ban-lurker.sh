# Everything under /products/ on shop.example goes: tested at lookup, and by the background sweeper (the lurker) for
# objects nobody asks for. No x-url / x-host trick needed: every object keeps the URL and Host that made it.
sluice ban 'req.url ~ ^/products/ && req.http.host == shop.example'
