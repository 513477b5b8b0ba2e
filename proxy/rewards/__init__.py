"""The reward path: the allow-list and the body rules, the upstream body, the remembered
decisions of repeats, a campaign's controls (its schedule, coins and human check), Nector's
drop-in call and the redemption of offers."""
