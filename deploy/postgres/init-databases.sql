-- One database per service (docs/architecture.md: each service owns its tables; nobody reads another's).
CREATE DATABASE salesflow_lead;
CREATE DATABASE salesflow_pipeline;
CREATE DATABASE salesflow_assignment;
CREATE DATABASE salesflow_notification;
CREATE DATABASE salesflow_metrics;
CREATE DATABASE salesflow_incentive;
