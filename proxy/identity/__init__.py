"""Who the customer is: session claims, signing and verifying sessions, authenticating a request
(with the failure limit), minting, and Nector lead tokens."""
