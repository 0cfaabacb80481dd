# dos stage
