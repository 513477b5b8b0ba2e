"""The demo: a stand-in for Nector that answers as Nector does, and a storefront page on the
proxy."""
