"""The experiment config: its schema and loading with overrides (`config_lib`), every value
checked at load (`config_checks`), the papers' recipes (`recipes`), a run's own config read
back from its workdir (`run_config`) and the generated key reference (`config_reference`)."""
