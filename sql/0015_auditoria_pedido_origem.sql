-- An audit row names the request behind it: pedido_id is the admin request's id (the X-Request-Id of its answer
-- and of its log lines; null for the command line), origem where it came from (`http:<client address>`, or
-- `cli:<host>`). Rows written before this have both null. Adding nullable columns rewrites nothing.
ALTER TABLE auditoria_admin ADD COLUMN pedido_id text, ADD COLUMN origem text;
