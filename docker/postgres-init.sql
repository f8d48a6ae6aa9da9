-- One Postgres for both servers: MLflow's tracking store and Prefect's database.
CREATE DATABASE mlflow OWNER llmpipe;
CREATE DATABASE prefect OWNER llmpipe;
