"""The storefront's reads: the routes a read may ask and what each becomes upstream, the read
path, the shared cache with its single flight, a customer's own kept answers, and what the
reads can serve (their capacity)."""
