"""Reference data shipped with ilcampaign (CSV files, one measurement a row, each with its source),
addressed in a spec by file name: ``references: {name: {shipped: <file>, ...}}``."""
