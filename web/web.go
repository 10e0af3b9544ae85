// Package web holds the browser assets a Parley node serves: the chat widget
// that any website embeds (widget.js), the demo page (demo.html) and the agent
// console (agent.html), with their styles and scripts under static/. The
// client code the widget and the console share is static/client.js; the
// node serves /widget.js as that file and widget.js joined (node/assets.go).
// They are plain files with no build step; FS exposes them to the HTTP server.
package web

import (
	"embed"
	"io/fs"
)

//go:embed widget.js demo.html agent.html static
var assets embed.FS

// FS returns the asset tree: widget.js, demo.html, agent.html and static/...
// are at its top.
func FS() fs.FS { return assets }
