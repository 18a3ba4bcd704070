# Personal-Data Ledger: the two commands of the README, and their helpers.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PDL := $(VENV)/bin/pdl

DEMO_DIR := .pdl-data/demo
DEMO_PEOPLE := 2000
DEMO_SEED := 7
# A simulated account with a full life: collections, uses, disclosures, a consent, an
# opt-out, erasures and the incident's notice (workload.account_id(5)).
DEMO_SUBJECT := 1000000005
DEMO_INCIDENT := inc-2024-001
DEMO := LEDGER_DEMO=1 LEDGER_DATA_DIR=$(DEMO_DIR) LEDGER_ACTOR=dpo@lingjing.cn $(PDL)

.PHONY: venv demo test bench clean-demo

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

demo: venv clean-demo
	@echo "== simulate $(DEMO_PEOPLE) people, publish, project"
	$(DEMO) simulate --people $(DEMO_PEOPLE) --seed $(DEMO_SEED) -o $(DEMO_DIR)/events.jsonl
	$(DEMO) publish $(DEMO_DIR)/events.jsonl
	$(DEMO) project
	@echo "== the data map of account $(DEMO_SUBJECT)"
	$(DEMO) subject $(DEMO_SUBJECT) --no-catch-up
	@echo "== the disclosure register, per recipient"
	$(DEMO) disclosures --summary --no-catch-up
	@echo "== findings: promises broken, per clause (exit 1 means some were found)"
	$(DEMO) findings --summary --no-catch-up || [ $$? -eq 1 ]
	@echo "== the scope of the simulated breach $(DEMO_INCIDENT)"
	$(DEMO) scope --incident $(DEMO_INCIDENT) --no-catch-up --show 5
	@echo "== $(DEMO_INCIDENT) as a case file: scope snapshot, grade (judged: below the thresholds)"
	$(DEMO) incident adopt $(DEMO_INCIDENT) --grade general \
		--justification "browsing logs and device ids of about 1,300 people, no sensitive categories"
	@echo "== the notify list (privacy officer, audited) and the drafts"
	$(DEMO) incident notify-list $(DEMO_INCIDENT) --reason "make demo: PIPL 57 notice"
	$(DEMO) incident draft $(DEMO_INCIDENT)
	@echo "== the case: grade, clocks (exit 1: a clock ran late, which is a finding)"
	$(DEMO) incident status $(DEMO_INCIDENT) || [ $$? -eq 1 ]

clean-demo:
	rm -rf $(DEMO_DIR)
	mkdir -p $(DEMO_DIR)

test: venv
	$(PY) -m pytest

# Replay / rebuild / scope figures on a generated 1M-event log (minutes; not run in CI).
bench: venv
	$(PY) bench/replay.py
