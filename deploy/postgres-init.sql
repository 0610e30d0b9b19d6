-- The registry and the transfer log live in separate databases.
CREATE DATABASE registry OWNER infoshare;
CREATE DATABASE transfer_log OWNER infoshare;
