"""Run inside the Airflow venv: load a DAG folder with Airflow's own DagBag and print what it found as JSON."""
import json
import sys

from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "schedule": str(getattr(dag, "schedule", None)),
        "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "retries": t.retries,
                              "bash_command": t.bash_command} for t in dag.tasks},
    }
print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
