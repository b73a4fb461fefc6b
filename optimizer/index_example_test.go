package optimizer_test

import (
	"encoding/json"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/vmcp/vmcp/optimizer"
)

func ExampleIndex_Search() {
	catalogue := []mcp.Tool{
		{Name: "github_create_pull_request", Description: "Open a pull request from a branch."},
		{Name: "github_list_issues", Description: "List the issues of a repository."},
		{Name: "weather_get_forecast", Description: "Weather for the coming days.",
			RawInputSchema: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string","description":"City name"}}}`)},
	}
	ix := optimizer.NewIndex(catalogue, nil) // once per catalogue, shared by every session

	for _, m := range ix.Search("will it rain in Lisbon tomorrow? which city forecast", "", 2) {
		fmt.Println(m.Tool.Name)
	}
	for _, m := range ix.Search("open issues", "repository", 1) {
		fmt.Println(m.Tool.Name)
	}
	// Output:
	// weather_get_forecast
	// github_list_issues
}
