"""Who the customer is: session claims, signing and verifying sessions, authenticating a request
(with the failure limit), minting, Nector lead tokens, the leads customer_id sessions resolved
to, and Shopify's App Proxy signatures and theme digests."""
