"""The storefront's reads: the routes a read may ask and what each becomes upstream, the read
path, and the shared cache with its single flight."""
