# fetch stage
