// Package seed holds the sample configuration that `confgate dev` loads into
// its embedded broker, so a first `confgate get payments/db/timeout` has
// something to show.
//
// The canonical file is sample.json, next to this file; it is embedded in the
// binary (see Sample), so edit it here and rebuild. `confgate dev --seed
// FILE` loads another file of the same format instead:
//
//	{
//	  "entries": [
//	    {"key": "payments/db/timeout", "value": "5s", "content_type": "text/plain"},
//	    {"key": "search/ranking/weights", "value": {"bm25": 0.6, "popularity": 0.4}}
//	  ]
//	}
//
// Each entry has:
//   - key: a config key, a path without a leading or trailing '/'
//     (payments/db/timeout).
//   - value: a JSON string, stored as its text, or any other JSON value
//     (object, array, number, boolean), stored as its compact JSON text with
//     content type application/json unless content_type says otherwise. null
//     is rejected: a seed writes values, it does not delete.
//   - content_type (optional): stored in the record's "content-type" header.
//   - headers (optional): an object of extra record headers, string to
//     string.
//
// Entries are written in file order through the gateway's store (acks=all);
// a key listed twice ends with its last value. Unknown fields are an error,
// so a misspelt "content-type" is caught instead of silently ignored.
package seed
