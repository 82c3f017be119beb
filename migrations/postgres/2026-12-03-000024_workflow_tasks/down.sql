DROP TABLE workflow_tasks;
