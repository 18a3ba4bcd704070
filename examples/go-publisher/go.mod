module example.com/pdl-go-publisher

go 1.26
