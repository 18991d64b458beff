/*
 * httpstatus.h - the reason phrase of each HTTP status the daemons send
 * (gatewayd's handshake refusals, the admin endpoints, emitd's API).
 *
 * Owns: that one table. Must not: know which daemon sends which status.
 */
#ifndef HTTPSTATUS_H
#define HTTPSTATUS_H

/* "Not Found" for 404; "Error" for a status not in the table. */
const char *http_reason(int status);

#endif
