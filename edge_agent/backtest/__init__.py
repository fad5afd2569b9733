"""`edge-agent backtest`: the live decoder -> rules -> incidents cores over a recording, offline, at full
speed: the incidents that would have been filed and the step outcomes, without touching Atlas.

`runner.run_backtest` is the entry point; `report` renders its result (text and JSON); `cli` is the
command. Nothing is imported here: the command's module must load without numpy (the `backtest` extra),
so that `edge-agent --help` works where it is not installed.
"""
