print("mixtral-chat: under construction")
