INSERT INTO pgbench_baseline (payload) VALUES ('{"n": 1}');
